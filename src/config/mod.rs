//! Typed, validated settings and every limit (units last: `timeout_ms`). Reaches into no other state.
