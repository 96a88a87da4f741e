"""Tests for the AnimateDiff extension."""
