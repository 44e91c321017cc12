"""ptt.net"""
