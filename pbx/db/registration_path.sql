-- Schema version 5: the RFC 3327 Path of a handset's binding (the edge proxy that holds its NAT
-- binding), one entry per line; NULL for a handset registered directly with the node.
ALTER TABLE registrations ADD COLUMN IF NOT EXISTS path text;
