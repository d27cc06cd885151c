-- depends: 0002_timeline
-- Alerts get their place in the live stream when they are read, not when they are written.
--
-- A client resumes the stream "after position N", so positions must become visible in order. Before, every
-- alert-writing transaction took one lock from its first alert to its commit to draw ids in commit order:
-- under load 93 % of the notifications backends waited on it (bench/RESULTS.md). Now writers draw only the
-- row's id (free, any order) and leave `position` empty; the reader of the stream first gives the committed
-- alerts that have none a position, in one short transaction under the lock (one sequencer at a time), then
-- reads by position. Rows written before this migration keep their id as their position.
ALTER TABLE alerts ADD COLUMN position bigint;
UPDATE alerts SET position = id;
CREATE SEQUENCE alerts_position_seq OWNED BY alerts.position;
SELECT setval('alerts_position_seq', greatest((SELECT max(id) FROM alerts), 1), (SELECT max(id) FROM alerts) IS NOT NULL);
CREATE UNIQUE INDEX alerts_position ON alerts (position);
CREATE INDEX alerts_kind_position ON alerts (kind, position);
CREATE INDEX alerts_unpositioned ON alerts (id) WHERE position IS NULL;
DROP INDEX alerts_kind_id;
