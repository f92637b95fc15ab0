"""Reset a broken guardian: escrow what can still be escrowed, keep the guardian's public metadata for an undo,"""
