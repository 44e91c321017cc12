"""ptt.media"""
