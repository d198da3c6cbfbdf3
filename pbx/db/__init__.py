"""Persistence: PostgreSQL (embedded via pgserver unless a URL is configured), written behind.

Live call handling never waits for the database: state lives in memory and changes are
submitted to `writebehind.WriteBehind`, which batches, retries and journals them.

- `database.open_database(url, state_dir)`: pool + migrations (`migrate.migrate`).
- `embedded.start_embedded(state_dir)`: the embedded server under state_dir/pg.
- `volunteers.VolunteerRepository`, `registrations.RegistrationRepository`: admin/start-up access.
- `events.event_op`, `registrations.save_op` / `delete_op`, `shifts.save_op`: ops for
  `WriteBehind.submit`; `shifts.ShiftRepository` reads volunteers' shift states at start.
"""
