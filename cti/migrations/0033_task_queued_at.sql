-- Omnichannel (docs/omnichannel.md, "Maximum wait"). When a task entered the queue it waits in
-- now, set when a transfer or a maximum wait's overflow moves it (NULL: its queue since it was
-- filed, created_at): after a restart or a takeover the queue's maximum wait counts from it.

ALTER TABLE tasks ADD COLUMN queued_at timestamptz;
