-- External ids and openids are opaque keys: compare them byte by byte (the "C"
-- collation) instead of by the database's locale. Equality is unchanged; nothing
-- orders by them. With a libc locale (e.g. C.UTF-8) every comparison in their
-- unique index goes through strcoll and PostgreSQL turns off abbreviated sort
-- keys. Measured on 1 M members: building the external-id index 772 -> 466 ms,
-- which is most of the tail of a first import (`members import` bulk load).
ALTER TABLE members
    ALTER COLUMN external_id TYPE TEXT COLLATE "C",
    ALTER COLUMN openid TYPE TEXT COLLATE "C";
