"""Skill bundles: zip archives with one top-level folder holding SKILL.md, validated before anything
is written and unpacked into a container's read-only skills directory."""
