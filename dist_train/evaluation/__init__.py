"""Video-level evaluation (the paper's protocol) and its report files."""
