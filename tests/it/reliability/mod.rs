//! Faults survived with nothing acknowledged lost (issue 6): `kill -9`, a database outage,
//! overload and SIGTERM, each under a mixed load; and hostile input at every door.

mod crash;
mod disk_full;
mod hostile;
pub mod load;
mod outage;
mod overload;
mod shutdown;
