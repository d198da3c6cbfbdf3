-- Migration 13: calls a volunteer answered, kept in the daily counts, so the partners' monthly
-- statement still says how many of their calls were answered after records are folded.
ALTER TABLE call_daily_counts ADD COLUMN IF NOT EXISTS answered integer NOT NULL DEFAULT 0;
-- days folded before this column: the outcomes that mean a volunteer answered
UPDATE call_daily_counts SET answered = calls WHERE outcome IN ('answered', 'handed_over');
