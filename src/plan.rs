//! Planning: turning a valid playbook and its parameters into concrete, fully resolved steps.
