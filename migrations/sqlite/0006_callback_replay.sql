-- The WeChat callback's replay guard: each verified signature (plaintext mode:
-- over token, timestamp and nonce; safe mode: also over the ciphertext) is
-- accepted once, and remembered until its timestamp leaves the accepted window
-- (microseconds since the epoch). Shared by every replica on this ledger.
CREATE TABLE callback_signatures (
    signature  TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX callback_signatures_expiry ON callback_signatures (expires_at);

-- When the member's consent last changed (a WeChat subscribe or unsubscribe by
-- its CreateTime, or a channel's refusal): an older event arriving later does
-- not undo a newer one, and a member import without an opt-out does not undo it
-- either.
ALTER TABLE members ADD COLUMN consent_at INTEGER;
