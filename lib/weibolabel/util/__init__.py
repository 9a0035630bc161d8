"""Small tools every layer uses: errors, atomic files, Markdown tables, plots (drawing only)."""
