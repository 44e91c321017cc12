"""ptt.record"""
