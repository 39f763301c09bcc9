#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod compile;
pub mod convert;
mod migrate;
mod row;

pub use compile::{Compiled, Dialect, Param, compile, subject_object};
pub use migrate::{Migration, pending};
pub use row::EventRow;
