//! The `nayose` command-line node.

fn main() {}
