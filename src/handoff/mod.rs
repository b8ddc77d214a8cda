//! Hinted handoff (DESIGN.md part 6). Not built yet: a later issue.
//! Owns hints for down replicas and their replay; must not judge liveness itself.
