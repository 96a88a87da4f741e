"""Host-agnostic AnimateDiff logic: params, context windows, prompt travel, output, runner."""
