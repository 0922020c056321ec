//! The integration tests: one binary (fast to link on 2 cores), one module per area.

mod run;
