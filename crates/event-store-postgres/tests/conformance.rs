//! The whole conformance kit against the real PostgreSQL server (`EVENT_STORE_TEST_PG`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

event_store_testkit::store_conformance_tests!(common::fresh);
event_store_testkit::cache_conformance_tests!(common::fresh_pair);
event_store_testkit::projection_conformance_tests!(common::fresh);
event_store_testkit::checkpoint_conformance_tests!(common::fresh);
