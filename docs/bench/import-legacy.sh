#!/bin/bash
# import-legacy against a raw INSERT ... SELECT (dblink) of the same rows: N original events
# (default 100 000) over 1 000 accounts, in every legacy shape the generator makes (legacy `type`,
# null subjects, times with a space and no offset). Needs a release build
# (`cargo build --release -p event-store-cli`), PostgreSQL on 127.0.0.1 with trust auth, `bc`.
# Creates and drops the databases es_lb_src and es_lb_dst.
set -e
N=${N:-100000}
P="psql -h 127.0.0.1 -U postgres -q"
$P -d test -c "DROP DATABASE IF EXISTS es_lb_src" -c "DROP DATABASE IF EXISTS es_lb_dst" -c "CREATE DATABASE es_lb_src" -c "CREATE DATABASE es_lb_dst"
$P -d es_lb_src <<SQL
CREATE TABLE events (id uuid PRIMARY KEY, data jsonb NOT NULL, context jsonb DEFAULT '{}');
INSERT INTO events
SELECT md5(i::text)::uuid,
       jsonb_build_object('event_namespace','accounts','event_type','Deposited','type','accounts.Deposited',
                          'account_id', i % 1000, 'amount', i % 97, 'note', repeat('n', 100)),
       jsonb_build_object('action','deposit','subject', CASE WHEN i % 5 = 0 THEN NULL ELSE jsonb_build_object('user_id', i % 1000) END,
                          'time', to_char(timestamp '2019-01-01' + (i || ' seconds')::interval, 'YYYY-MM-DD HH24:MI:SS'))
FROM generate_series(1, $N) i;
SQL
$P -d es_lb_dst -c "CREATE EXTENSION dblink" -c "CREATE TABLE copy (id uuid PRIMARY KEY, data jsonb NOT NULL, context jsonb DEFAULT '{}')"
S=$(date +%s.%N)
$P -d es_lb_dst -c "INSERT INTO copy SELECT * FROM dblink('host=127.0.0.1 user=postgres dbname=es_lb_src', 'SELECT id, data, context FROM events') AS t(id uuid, data jsonb, context jsonb)"
E=$(date +%s.%N)
RAW=$(echo "$N / ($E - $S)" | bc -l)
echo "raw INSERT ... SELECT: $RAW rows/s"
BIN=${BIN:-target/release/event-store}
URL="postgres://postgres@127.0.0.1:5432/es_lb_dst"
$BIN --url "$URL" init >/dev/null
S=$(date +%s.%N)
$BIN --url "$URL" import-legacy --source accounts=postgres://postgres@127.0.0.1:5432/es_lb_src --stream-key data.account_id --stream-prefix account- --format json > /dev/null
E=$(date +%s.%N)
PG=$(echo "$N / ($E - $S)" | bc -l)
echo "import-legacy into PostgreSQL: $PG ev/s, ratio $(echo "$PG / $RAW" | bc -l)"
rm -f /tmp/lb.db /tmp/lb.db-wal /tmp/lb.db-shm
S=$(date +%s.%N)
$BIN --url sqlite:///tmp/lb.db import-legacy --source accounts=postgres://postgres@127.0.0.1:5432/es_lb_src --stream-key data.account_id --stream-prefix account- --format json > /dev/null
E=$(date +%s.%N)
SQ=$(echo "$N / ($E - $S)" | bc -l)
echo "import-legacy into SQLite: $SQ ev/s, ratio $(echo "$SQ / $RAW" | bc -l)"
S=$(date +%s.%N)
$BIN --url sqlite:///tmp/lb.db import-legacy --source accounts=postgres://postgres@127.0.0.1:5432/es_lb_src --stream-key data.account_id --stream-prefix account- --format json > /dev/null
E=$(date +%s.%N)
echo "re-run into SQLite: $(echo "$N / ($E - $S)" | bc -l) ev/s"
S=$(date +%s.%N)
$BIN --url sqlite:///tmp/lb.db import-legacy --dry-run --source accounts=postgres://postgres@127.0.0.1:5432/es_lb_src --stream-key data.account_id --stream-prefix account- --format json > /dev/null
E=$(date +%s.%N)
echo "the sources alone (--dry-run): $(echo "$N / ($E - $S)" | bc -l) ev/s"
$P -d test -c "DROP DATABASE IF EXISTS es_lb_src" -c "DROP DATABASE IF EXISTS es_lb_dst"
