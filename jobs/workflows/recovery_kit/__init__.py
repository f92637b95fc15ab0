"""The disaster-recovery kit: every escrowed pair, an index and the PowerShell to restore without the console."""
