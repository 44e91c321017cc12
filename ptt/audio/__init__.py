"""ptt.audio"""
