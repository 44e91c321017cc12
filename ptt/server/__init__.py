"""ptt.server"""
