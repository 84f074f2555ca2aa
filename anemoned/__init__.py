"""anemoned: back up every user's backup/ directory to SFTP servers with rclone."""
__version__ = "0.1.0"
