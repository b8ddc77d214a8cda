//! Framing, connections, the generated flatbuffers code and dispatch. Holds no request semantics.
