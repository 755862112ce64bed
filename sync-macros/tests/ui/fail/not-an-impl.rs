use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

#[mutations]
struct NotAnImpl;

fn main() {}
