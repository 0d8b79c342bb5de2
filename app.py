"""Subspace Explorer: the navigation, Overview first; every page is a thin script under pages/."""
import streamlit as st

PAGES = [("pages/0_Overview.py", "Overview", None), ("pages/1_Weight_spectra.py", "Weight spectra", "Weight_spectra"),
         ("pages/2_Projection_lab.py", "Projection lab", "Projection_lab"),
         ("pages/3_Update_overlap.py", "Update overlap", "Update_overlap"),
         ("pages/4_Activation_space.py", "Activation space", "Activation_space"),
         ("pages/5_Spot-check.py", "Spot-check", "Spot-check")]

st.navigation([st.Page(path, title=title, url_path=url, default=url is None) for path, title, url in PAGES]).run()
