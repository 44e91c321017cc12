"""ptt.desktop"""
