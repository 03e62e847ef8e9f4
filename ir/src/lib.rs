//! bfly-ir: the Graph IR (typed ops on a petgraph `StableDiGraph`), its verifier, text
//! printer and parser, and Graphviz export.

pub mod dot;
pub mod graph;
pub mod infer;
pub mod init;
pub mod kernel;
pub mod op;
pub mod parse;
pub mod print;
pub mod summary;
pub mod types;
pub mod verify;

pub use graph::{Edge, Graph, IrError, Loc, Node, NodeId, Output, RegionCycle, RegionId, Value};
pub use infer::{TwiddleShape, butterfly_width, infer_types};
pub use op::{AttrValue, Init, Op, Param, StrideOrder};
pub use print::print_graph;
pub use types::{DType, Dim, Type};
pub use verify::verify;
