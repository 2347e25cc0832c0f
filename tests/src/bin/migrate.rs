//! The migration command line, as a binary the tests can run in several processes.

fn main() -> std::process::ExitCode {
    migration::command::main()
}
