-- The order ledger, as staging's local SQLite file holds it.
CREATE TABLE IF NOT EXISTS orders (
    id       TEXT PRIMARY KEY,          -- the shop's order id: inserting it twice is harmless
    customer TEXT NOT NULL,
    total    REAL NOT NULL,
    paid     INTEGER NOT NULL DEFAULT 0
);
