//! Membership and failure detection (DESIGN.md part 5). Gossip arrives in a later issue; today
//! the cluster view comes from a static node list (see `config`). Must not route client requests.
