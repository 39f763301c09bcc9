-- No read uses events_time: time ranges are filtered while walking the log (the compiled
-- queries write `+time`, which keeps the column out of index choice, so that a range never
-- makes a read sort), so every append paid for an index nothing read.
DROP INDEX IF EXISTS events_time;
