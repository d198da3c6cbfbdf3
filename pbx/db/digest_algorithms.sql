-- Schema version 2: digest algorithm settings (issue 8).
-- A volunteer whose handsets are known to answer SHA-256 challenges is challenged with SHA-256
-- only (NULL: the service's digest_algorithms setting, MD5 by default); each registration
-- records the algorithm its REGISTER authenticated with, shown by `helpline volunteers list`.
ALTER TABLE volunteers
    ADD COLUMN digest_algorithm text CHECK (digest_algorithm IN ('MD5', 'SHA-256'));
ALTER TABLE registrations ADD COLUMN auth_algorithm text;
