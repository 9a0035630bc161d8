"""What a labeled corpus says and the human loop: analysis, label issues, annotation, active learning."""
