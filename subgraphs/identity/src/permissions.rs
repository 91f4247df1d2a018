//! The permission codes the identity subgraph checks. They are listed, with every other
//! service's, in the catalog `keygraph_kernel::permissions`.

pub use keygraph_kernel::permissions::identity::*;
