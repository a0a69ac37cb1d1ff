-- A customer's account number, so a caller can be found by the number they type
-- in the IVR (or the dialplan sends to /hooks/lookup?account=). Optional; one
-- customer per account number; the unique constraint's index makes the lookup
-- one index probe.
ALTER TABLE customers
    ADD COLUMN account_number text
        CONSTRAINT customers_account_number_key UNIQUE
        CONSTRAINT customers_account_number_check CHECK (account_number ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$');
