-- The table refuses what validation refuses, whoever writes (defense in depth: the store's
-- writer only inserts validated events). Mirrors PostgreSQL's constraints: stream ids of 1 to
-- 255 bytes without control, white-space or invisible format characters; namespaces and types of
-- 1 to 64 of A-Z a-z 0-9 _ -, starting with a letter or a digit; data and context that are JSON
-- objects. Only cheap checks: no JSON is parsed again.
CREATE TRIGGER IF NOT EXISTS events_check_insert BEFORE INSERT ON events
WHEN length(CAST(NEW.stream AS BLOB)) NOT BETWEEN 1 AND 255
  OR NEW.stream GLOB ('*[' || char(1) || '-' || char(32) || char(127) || '-' || char(160)
                      || char(173) || char(5760) || char(6158) || char(8192) || '-' || char(8207)
                      || char(8232) || '-' || char(8239) || char(8287) || '-' || char(8292)
                      || char(8294) || '-' || char(8303) || char(12288) || char(65279) || ']*')
  OR length(NEW.namespace) NOT BETWEEN 1 AND 64
  OR NEW.namespace NOT GLOB '[A-Za-z0-9]*'
  OR NEW.namespace GLOB '*[^A-Za-z0-9_-]*'
  OR length(NEW.event_type) NOT BETWEEN 1 AND 64
  OR NEW.event_type NOT GLOB '[A-Za-z0-9]*'
  OR NEW.event_type GLOB '*[^A-Za-z0-9_-]*'
  OR substr(NEW.data, 1, 1) <> '{'
  OR substr(NEW.context, 1, 1) <> '{'
BEGIN
    SELECT RAISE(ABORT, 'events: the row breaks the input rules (stream id, names, or data and context as JSON objects)');
END;
