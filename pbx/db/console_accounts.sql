-- Schema version 12: accounts of the coordinators' console (pbx/web). Passwords are argon2id
-- hashes (argon2-cffi); the role says what an account may change.
CREATE TABLE console_accounts (
    username      text PRIMARY KEY,
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('coordinator', 'admin')),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
