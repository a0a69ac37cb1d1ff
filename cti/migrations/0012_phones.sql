-- Agents' phones (docs/softphone.md): the devices Asterisk provisions as PJSIP
-- endpoints, which agent sits at which device (hot-desking), and each agent's
-- phone options. The secret of a device is kept only as its HA1 digest
-- (MD5 of "device:realm:password", what Asterisk checks a digest login with).

CREATE TABLE phone_devices (
    device_id  text PRIMARY KEY CHECK (device_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$'),
    kind       text NOT NULL CHECK (kind IN ('sip', 'webrtc')),
    label      text NOT NULL DEFAULT '' CHECK (length(label) <= 128),
    ha1        text CHECK (ha1 ~ '^[0-9a-f]{32}$'),
    realm      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE phone_agents (
    agent_id    text PRIMARY KEY,
    -- the device the agent sits at now (NULL: the device of the ACD configuration)
    device_id   text UNIQUE REFERENCES phone_devices (device_id) ON DELETE SET NULL,
    auto_answer boolean NOT NULL DEFAULT false,
    zip_tone    boolean NOT NULL DEFAULT false,
    bound_at    timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
