//! Wire formats -> our signal model. Pure: no I/O, no clock; one file per source format.

pub mod legacy;
pub mod text;
