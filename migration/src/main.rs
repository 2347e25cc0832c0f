//! `cargo run -p migration -- [-u URL] [up|down|status|fresh|refresh|reset|generate NAME]`:
//! see [`migration::command`].

fn main() -> std::process::ExitCode {
    migration::command::main()
}
