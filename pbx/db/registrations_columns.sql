-- Schema version 4: registrations' columns named after what they hold. `contact_uri` held the
-- binding's key within its address-of-record (the handset's +sip.instance when it sent one,
-- else its Contact URI) and `instance_id` held the Contact URI itself.
ALTER TABLE registrations RENAME COLUMN contact_uri TO binding_key;
ALTER TABLE registrations RENAME COLUMN instance_id TO contact;
