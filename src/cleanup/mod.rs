//! Post-incident cleanup: computing and applying inverses from journals, and verifying that the
//! cluster is clean.
