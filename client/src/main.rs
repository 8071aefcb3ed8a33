mod daemon_cmd;

fn main() {}
