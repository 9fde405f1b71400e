//! The dap command line.
fn main() {}
