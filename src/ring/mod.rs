//! Consistent-hashing ring: tokens, vnode -> (node, shard), preference lists. Pure: no I/O, and it
//! does not decide membership.
