"""ptt.protocol"""
