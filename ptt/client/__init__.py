"""ptt.client"""
