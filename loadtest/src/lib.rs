//! Load tests: many simulated viewers with realistic demand, scenarios and
//! reports.
//!
//! A shell until issue 7 fills it.
