"""ptt.cli"""
