//! What people see while a run goes: printing that cannot panic, the live progress line and the
//! waiting spinner, the ETA, and hints that can be pasted as they are. The end of a run, in words
//! and JSON, is [`crate::report`].

pub(crate) mod estimate;
pub(crate) mod hint;
pub(crate) mod print;
pub(crate) mod progress;
